from jinvert.cli import entry

entry()
