"""The errors leadrank expects, and the exit code the command line gives each kind.

Every failure a user can cause or fix is a :class:`LeadrankError`: its message names the
file, row or setting, what is wrong and what to do. The command line maps the kind to an
exit code, so a script can tell bad data from a bad flag or a broken environment:

* 0: done;
* 1: :class:`EnvironmentProblem`: a file, folder, model or disk that is missing, unreadable
  or broken (also an unexpected error, printed with a hint to rerun with ``--debug``);
* 2: a usage error: an unknown flag or a bad flag value (Click's convention);
* 3: :class:`DataContractError`: a table, spec or rule that breaks the data contract.

The classes also derive from the built-in exception a Python caller would expect
(``ValueError``, ``FileNotFoundError``), so existing ``except ValueError`` code keeps working.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ENVIRONMENT = 1
EXIT_USAGE = 2
EXIT_DATA = 3


class LeadrankError(Exception):
    """Base of every error leadrank raises on purpose."""

    exit_code: int = EXIT_ENVIRONMENT


class EnvironmentProblem(LeadrankError):
    """A file, folder, model or resource that is missing, unreadable or broken."""

    exit_code = EXIT_ENVIRONMENT


class ConfigurationError(LeadrankError, ValueError):
    """A setting (flag, YAML key, preset) that cannot be used as given."""

    exit_code = EXIT_USAGE


class DataContractError(LeadrankError, ValueError):
    """Input data (a table, a spec, a rule, a request) that breaks the data contract."""

    exit_code = EXIT_DATA
