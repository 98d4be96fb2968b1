"""What every framework adapter shares: the sandbox as a "run Python" tool, in one shape.

An adapter (securepy-langchain, -openai, -anthropic, -llamaindex) is a thin layer over this
module. It builds one :class:`SandboxRunner` (passing ``convert=`` so its framework's native
tools can go straight into ``tools=``), offers the runner as its framework's own tool type with
the one argument described by :func:`code_schema` (:class:`SandboxToolMixin`, or
:class:`SandboxOwnerMixin` for a tool type with its own name and description fields), and
converts native tools into :class:`securepy.Tool` objects with :func:`host_tool` (and
:func:`keyword_function` for the call itself). The runner owns a session it creates (lazily, on
first use; with ``sanitize_errors=True`` unless told otherwise, since its errors are read by a
model) or uses a session or pool the caller passes, and turns every result and every failure
into text a model can read (:meth:`SandboxRunner.run_arguments` also the model's malformed
arguments), so an agent loop never breaks on an error in the code.

The run_python description lists each host tool as a Python stub: its signature with the return
type, its docstring, and an ``Args:`` section built from the argument descriptions in its schema
(when the docstring has none); ``help(name)`` inside the session shows the same. Each docstring
is cut to :data:`TOOL_DESCRIPTION_CHARS` (2,000) characters, with a marker line; once the
listing passes :data:`DESCRIPTION_BUDGET_CHARS` (16,000), the remaining tools are listed by
signature only, and a last line says so.

Images the code displays (``Execution.outputs``) reach the model as :class:`ModelImage` objects
on :attr:`RunOutcome.images`, which each adapter puts into its framework's own image block: at
most :data:`MAX_MODEL_IMAGES` per run, each at most :data:`MAX_MODEL_IMAGE_BYTES` and checked to
be the image format it claims; the rest are named in a note at the end of the text.
"""

from __future__ import annotations

from ._execution import DEFAULT_TEXT_CHARS as DEFAULT_TEXT_CHARS
from ._model_images import MAX_MODEL_IMAGE_BYTES as MAX_MODEL_IMAGE_BYTES
from ._model_images import MAX_MODEL_IMAGES as MAX_MODEL_IMAGES
from ._model_images import ModelImage as ModelImage
from ._model_images import describe_image as describe_image
from ._model_images import model_images as model_images
from ._model_text import CODE_DESCRIPTION as CODE_DESCRIPTION
from ._model_text import DEFAULT_DESCRIPTION as DEFAULT_DESCRIPTION
from ._model_text import DESCRIPTION_BUDGET_CHARS as DESCRIPTION_BUDGET_CHARS
from ._model_text import TOOL_DESCRIPTION_CHARS as TOOL_DESCRIPTION_CHARS
from ._model_text import code_problem as code_problem
from ._model_text import code_schema as code_schema
from ._model_text import describe_error as describe_error
from ._model_text import describe_sandbox as describe_sandbox
from ._model_text import describe_tool as describe_tool
from ._native import field_of as field_of
from ._native import host_tool as host_tool
from ._native import keyword_function as keyword_function
from ._runner import RunOutcome as RunOutcome
from ._runner import SandboxOwnerMixin as SandboxOwnerMixin
from ._runner import SandboxRunner as SandboxRunner
from ._runner import SandboxToolMixin as SandboxToolMixin

__all__ = [
    "CODE_DESCRIPTION",
    "DEFAULT_DESCRIPTION",
    "DEFAULT_TEXT_CHARS",
    "DESCRIPTION_BUDGET_CHARS",
    "MAX_MODEL_IMAGES",
    "MAX_MODEL_IMAGE_BYTES",
    "TOOL_DESCRIPTION_CHARS",
    "ModelImage",
    "RunOutcome",
    "SandboxOwnerMixin",
    "SandboxRunner",
    "SandboxToolMixin",
    "code_problem",
    "code_schema",
    "describe_error",
    "describe_image",
    "describe_sandbox",
    "describe_tool",
    "field_of",
    "host_tool",
    "keyword_function",
    "model_images",
]

# Documented here, where adapters import them from.
for _name in (
    "ModelImage",
    "RunOutcome",
    "SandboxOwnerMixin",
    "SandboxRunner",
    "SandboxToolMixin",
):
    globals()[_name].__module__ = __name__
del _name
