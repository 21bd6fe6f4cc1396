from featdistill_core.cli import entry

entry()
