"""The one YAML reader for files users hand to edgeseg: plain types only, and bounded.

``load_yaml(path)`` and ``parse_yaml(text, source)`` return what ``yaml.safe_load`` would
(dicts, lists, str, int, float, bool, None, dates) or raise ``EdgesegError("<source>: <problem>")``
on one line. Before any Python object is built they refuse:

* a file over :data:`MAX_YAML_BYTES` (checked with ``fstat`` before reading; FIFOs, devices and
  folders are refused too, so reading never blocks or runs on);
* more than :data:`MAX_YAML_ALIASES` alias references (``*name``), a document that would hold
  more than :data:`MAX_YAML_NODES` nodes with every alias expanded (a "billion laughs" bomb is
  a few hundred bytes that expand to 10^9 nodes in whatever walks the result), a recursive
  alias, or nesting deeper than :data:`MAX_YAML_DEPTH`.

Tags beyond YAML's plain types (``!!python/...``, custom tags) are refused by ``yaml.SafeLoader``
as always. libyaml's loader is used when PyYAML has it (fast; it also stops at 1000 nesting
levels), else the pure-Python one.
"""

from __future__ import annotations

import os

import yaml

from edgeseg.runtimes.errors import EdgesegError, first_line, os_reason
from edgeseg.runtimes.io.capped import FileLimitError, read_capped

MAX_YAML_BYTES = 1 << 20  # bytes (1 MiB): config and data YAMLs are a few KB
MAX_YAML_ALIASES = 100  # alias references (*name) per document
MAX_YAML_NODES = 1_000_000  # nodes in the document with every alias expanded
MAX_YAML_DEPTH = 100  # nesting levels of mappings / sequences

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(path: str | os.PathLike, max_bytes: int = MAX_YAML_BYTES) -> object:
    """Read and parse one YAML file (UTF-8, at most ``max_bytes`` bytes) with the limits above.

    Returns:
        The document as plain Python objects (None for an empty file).

    Raises:
        EdgesegError: ``"<path>: <problem>"``: the file is missing, not a regular file, larger
            than ``max_bytes``, not UTF-8, not valid YAML, or over a limit of this module.
    """
    try:
        data = read_capped(path, max_bytes)
    except FileNotFoundError:
        raise EdgesegError(f"{path}: YAML file not found") from None
    except FileLimitError as e:
        raise EdgesegError(f"{path}: YAML file refused: {e}") from None
    except (OSError, ValueError) as e:
        raise EdgesegError(f"{path}: YAML file cannot be read ({os_reason(e)})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise EdgesegError(f"{path}: not UTF-8 text (byte {e.start})") from None
    return parse_yaml(text, path)


def parse_yaml(text: str, source: str | os.PathLike = "<string>") -> object:
    """Parse one YAML document with the limits above; ``source`` names it in errors.

    Raises:
        EdgesegError: ``"<source>: <problem>"`` for invalid YAML, more than one document, an
            unsafe tag, or a document over a limit.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_graph(node, source)
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        raise EdgesegError(f"{source}: not valid YAML ({first_line(e)})") from None
    except RecursionError:
        raise EdgesegError(f"{source}: YAML nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise EdgesegError(f"{source}: YAML value not usable ({first_line(e)})") from None
    finally:
        loader.dispose()


def _children(node: yaml.Node) -> list[yaml.Node]:
    """The nodes directly inside a sequence or mapping node (keys and values); none for a scalar."""
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_graph(root: yaml.Node, source) -> None:
    """Count alias references, expanded size and depth of a composed document (iterative, linear time).

    The composer returns the anchored node object again for each alias, so a node reached a
    second time is an alias reference; the expanded size of a node is 1 + that of its children.

    Raises:
        EdgesegError: a limit of this module is exceeded, or an alias refers to its own ancestor.
    """
    size: dict[int, int] = {}  # id(node) -> expanded node count, once finished
    on_path: set[int] = set()
    aliases = 0
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in _children(node))
            if size[key] > MAX_YAML_NODES:
                raise EdgesegError(f"{source}: YAML expands to more than {MAX_YAML_NODES:,} nodes (alias bomb?)")
        elif key in size:
            aliases += 1
            if aliases > MAX_YAML_ALIASES:
                raise EdgesegError(f"{source}: YAML has more than {MAX_YAML_ALIASES} alias references (alias bomb?)")
        elif key in on_path:
            raise EdgesegError(f"{source}: YAML alias refers to a node that contains it (recursive alias)")
        elif len(on_path) >= MAX_YAML_DEPTH:
            raise EdgesegError(f"{source}: YAML nested deeper than {MAX_YAML_DEPTH} levels")
        else:
            on_path.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))
