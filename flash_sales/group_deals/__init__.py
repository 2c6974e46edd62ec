"""Group deals (issue 17): a sale of kind `group` whose stock sells only to groups that fill in
time, each member one item at the group price (README.md beside this module)."""
