"""The one exception type for mistakes the user can fix: a setting, a path, a busy or unusable file."""


class UserError(Exception):
    """Its message is all the user sees: it names what is wrong and what to do, never a secret.

    The CLI prints it as one `pendo-datasync: <message>` line and exits 2, instead of a traceback
    (`--debug` or PENDO_DEBUG=1 show the traceback).
    """
