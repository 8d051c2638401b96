"""The errors a user can fix. The CLI prints these in one line, without a traceback; anything else is a bug
and keeps its traceback.

Each also derives from the builtin exception that code written against earlier versions caught
(`ValueError` for bad settings, `PermissionError` for an unwritable folder, ...), so `except ValueError`
still works.
"""

from __future__ import annotations

import argparse


class UserError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""


class ConfigError(UserError, ValueError):
    """A setting is malformed, out of range, or clashes with another one."""


class RunFolderError(UserError, RuntimeError):
    """A run folder is missing, belongs to another config, or holds a damaged or misplaced file."""


class RunLockedError(RunFolderError):
    """Another process is working on the run folder."""


class OutputFolderError(UserError, PermissionError):
    """Results cannot be written where they were asked to go."""


class DiskFullError(UserError, OSError):
    """The disk filled up while lth was writing; finished work is kept and rerunning resumes."""


class BusyMachineWarning(UserWarning):
    """The CPU is already busy when training starts: it will be slower than on a quiet machine (results are
    unaffected)."""


class UsageError(ConfigError):
    """A command line that does not parse: an unknown option, a missing or malformed value."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with its errors raised as a UsageError (the CLI prints it in one line) instead of printing the
    usage and exiting."""

    def error(self, message: str):
        raise UsageError(f"{message} (`{self.prog} --help` lists the options)")
