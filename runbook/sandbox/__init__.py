"""The local sandbox: real local stand-ins for every store (see ../shared/STANDINS.md)."""
