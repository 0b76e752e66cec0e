"""What a user can fix, and how every script says so: one line, no traceback.

Every error a user can act on (a bad setting, a missing file, an image of the
wrong size, a foreign checkpoint) is a `UserError`, raised where it is found.
Each script's entry point runs under `cli`, which prints `error: MESSAGE` to
stderr and exits with status 1. (argparse's own usage errors exit with 2.)
Ctrl-C ends a script with status 130, the shell's for SIGINT (128 + 2); train.py
prints where its run can be continued first.
"""
import sys

EXIT_STATUS = 1
INTERRUPTED_STATUS = 130


class UserError(Exception):
    """Something the user can fix; the message says what and where."""


def cli(main, *args):
    """main(*args), with a UserError or OSError (unwritable folder, full disk)
    turned into one line on stderr and EXIT_STATUS, and Ctrl-C into INTERRUPTED_STATUS."""
    try:
        return main(*args)
    except UserError as error:
        sys.exit(fail(error))
    except OSError as error:
        sys.exit(fail(f'{error.filename}: {error.strerror}' if error.filename and error.strerror else error))
    except KeyboardInterrupt:
        print('\ninterrupted', file=sys.stderr)
        sys.exit(INTERRUPTED_STATUS)


def fail(message):
    print(f'error: {message}', file=sys.stderr)
    return EXIT_STATUS
