"""The one exception type user-facing code raises for bad input or setup."""


class BridgeError(Exception):
    """Bad input, arguments or setup; the message is one line naming the file or value at fault.

    The CLI prints it and exits 2, so it must never carry a traceback-worthy bug."""
