// Peer for bench/fanout.py: one Node.js process, socket.io with @socket.io/redis-adapter.
// A viewer connects with ?room=R and joins that room; the bench publishes each room event
// through Redis exactly as @socket.io/redis-emitter does, and the adapter emits it to the room.
//   node node_server.js PORT REDIS_URL KEY
"use strict";
const http = require("http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

async function main() {
  const [port, redisUrl, key] = process.argv.slice(2);
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  pub.on("error", (err) => console.error("redis:", err.message));
  sub.on("error", (err) => console.error("redis:", err.message));
  await Promise.all([pub.connect(), sub.connect()]);
  const server = http.createServer((req, res) => {
    res.writeHead(req.url === "/healthz" ? 200 : 404).end();
  });
  const io = new Server(server, {
    adapter: createAdapter(pub, sub, { key }),
    transports: ["websocket"],
    perMessageDeflate: false,
    serveClient: false,
    maxHttpBufferSize: 4096,
  });
  io.on("connection", (socket) => {
    const room = socket.handshake.query.room;
    if (typeof room === "string" && room) socket.join(room);
  });
  const stop = () => {
    io.close();
    Promise.allSettled([pub.quit(), sub.quit()]).then(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  server.listen(Number(port), "127.0.0.1", () => console.log(`ready ${port}`));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
