"""Writing files so that a crash at any moment leaves the previous version intact:
every file goes to a temporary name in the same folder and is renamed into place."""
import os
from pathlib import Path

import hooks


def temporary_for(path):
    """A temporary name beside path; also removes those a killed process left."""
    path = Path(path)
    for stale in path.parent.glob(f'.{path.name}.*.tmp'):
        stale.unlink(missing_ok=True)
    return path.with_name(f'.{path.name}.{os.getpid()}.tmp')


def atomic_write(path, data):
    """Write bytes or text to path via a temporary file and a rename."""
    path = Path(path)
    temporary = temporary_for(path)
    try:
        with open(temporary, 'wb') as file:
            file.write(data.encode() if isinstance(data, str) else data)
            file.flush()
            os.fsync(file.fileno())
        hooks.kill_half_written(f'kill_in_write@{path.name}', temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
