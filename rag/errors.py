"""Errors raised by the library; messages say what to do next.

RagError
├── ConfigError            a setting is wrong or a model cannot be found
├── IndexNotFoundError     no index in the index directory yet
├── IndexMismatchError     the index was built with another embedding model
├── IndexCorruptError      a file of the index is damaged and cannot be rebuilt
├── IndexBusyError         another process holds the writer lock
├── IngestError            a document could not be loaded or stored
├── DocumentNotFoundError  no document with that id
└── GenerationError        the LLM failed (timeout, error, all fallbacks exhausted)
"""

from __future__ import annotations


class RagError(Exception):
    """Base class of every error this library raises on purpose."""


class ConfigError(RagError):
    """A setting is invalid or a required resource (e.g. a model) is missing."""


class IndexNotFoundError(RagError):
    """The index directory holds no index yet."""


class IndexMismatchError(RagError):
    """The index was built with a different embedder than the one configured."""


class IndexCorruptError(RagError):
    """A file of the index is damaged beyond automatic repair."""


class IndexBusyError(RagError):
    """Another process is writing to the index."""


class IngestError(RagError):
    """A document could not be loaded, decoded or stored."""


class DocumentNotFoundError(RagError):
    """No document with the given id exists."""


class GenerationError(RagError):
    """The chat model failed to produce an answer."""
