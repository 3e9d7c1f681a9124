"""What every workstation command shares: the error a user can fix (one line and an exit
code, never a traceback) and rich output (tables, progress). Left out of the images."""
