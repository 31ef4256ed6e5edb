"""Which files make one topology: the root file (or every ``*.yaml`` of a directory) and the
files their ``include:`` names, in order, depth first.

The include tree is the root's directory: an include is a path relative to the including
file, and what it resolves to (symlinks followed) must lie inside the tree, so a topology
cannot make netdecl read /etc/shadow or a file beside the repository. No absolute paths, no
cycles, no file twice, at most MAX_INCLUDE_DEPTH levels and MAX_FILES files.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from netdecl.topology.template.expand import (
    MAX_FILES,
    MAX_INCLUDE_DEPTH,
    Source,
    TemplateProblem,
)
from netdecl.topology.yamlsrc import Document, YamlProblem, decode, parse, quoted

Reader = Callable[[str], bytes]  # a file's bytes, or InvalidTopology (loader.read_file)
SUFFIXES = (".yaml", ".yml")


def directory_files(directory: str) -> list[str]:
    """The topology files of a directory, in name order (hidden files and others skipped)."""
    names = sorted(n for n in os.listdir(directory)
                   if n.endswith(SUFFIXES) and not n.startswith("."))
    return [os.path.join(directory, n) for n in names]


class Collector:
    def __init__(self, read: Reader, tree: str):
        self.read = read
        self.tree = os.path.realpath(tree)
        self.sources: list[Source] = []
        self.seen: dict[str, str] = {}  # real path -> the name it was first read under

    def add(self, name: str, stack: tuple[str, ...], parse_text: str | None = None,
            at: tuple[Source, tuple[str | int, ...]] | None = None, root: bool = False) -> None:
        """Read ``name`` and what it includes; ``at``: the include entry naming it; ``root``:
        the file the user named (which may be a symlink to anywhere: its directory is the
        tree)."""
        def refuse(message: str) -> TemplateProblem:
            if at is None:
                return TemplateProblem(name, (0, 0), "", message)
            return self.problem(at[0], at[1], message)

        real = os.path.realpath(name)
        if not root and os.path.commonpath([self.tree, real]) != self.tree:
            # a file of an included directory, symlinked out of the tree
            raise refuse(f"{name} is outside the topology's directory {self.tree} (symlinks "
                         "are followed)")
        if real in stack:
            chain = " -> ".join(self.seen[r] for r in (*stack[stack.index(real):], real))
            raise refuse(f"include cycle: {chain}")
        if real in self.seen:
            raise refuse(f"{name} is included twice (first as {self.seen[real]})")
        if len(self.sources) >= MAX_FILES:
            raise refuse(f"more than {MAX_FILES} files included")
        self.seen[real] = name
        # the resolved path, as checked: a symlink swapped after the check is not followed
        try:
            doc = parse(decode(self.read(real)) if parse_text is None else parse_text)
        except YamlProblem as e:
            raise TemplateProblem(name, (e.line, e.col), "", e.message) from None
        source = Source(name, doc if doc.data is not None else Document(data={}))
        self.sources.append(source)
        self.includes(source, (*stack, real))

    def includes(self, source: Source, stack: tuple[str, ...]) -> None:
        data = source.doc.data
        listed = data.get("include") if isinstance(data, dict) else None
        if listed is None:
            return
        if isinstance(listed, str):
            listed = [listed]
        if not isinstance(listed, list):
            raise self.problem(source, ("include",), "include: a file name or a list of them")
        for i, entry in enumerate(listed):
            path = ("include", i) if isinstance(data.get("include"), list) else ("include",)
            if len(stack) > MAX_INCLUDE_DEPTH:
                raise self.problem(source, path, f"includes nest deeper than "
                                                 f"{MAX_INCLUDE_DEPTH} files")
            for name in self.resolve(source, path, entry):
                self.add(name, stack, at=(source, path))

    def resolve(self, source: Source, path: tuple[str | int, ...], entry: object) -> list[str]:
        if not isinstance(entry, str) or not entry:
            raise self.problem(source, path, "include: a relative file or directory name")
        if os.path.isabs(entry):
            raise self.problem(source, path, f"include {quoted(entry)}: give a path relative "
                                             "to this file, not an absolute one")
        name = os.path.normpath(os.path.join(os.path.dirname(source.file), entry))
        real = os.path.realpath(name)
        if os.path.commonpath([self.tree, real]) != self.tree:
            raise self.problem(source, path, f"include {quoted(entry)} is outside the "
                                             f"topology's directory {self.tree} (symlinks "
                                             "are followed)")
        if not os.path.exists(real):
            raise self.problem(source, path, f"include {quoted(entry)}: no such file")
        if os.path.isdir(real):
            return directory_files(name)
        return [name]

    @staticmethod
    def problem(source: Source, path: tuple[str | int, ...], message: str) -> TemplateProblem:
        return TemplateProblem(source.file, source.doc.value_pos(path), "", message)


def collect(root: str, read: Reader, text: str | None = None) -> list[Source]:
    """Every file of the topology at ``root`` (a file or a directory), root first."""
    if os.path.isdir(root):
        collector = Collector(read, root)
        files = directory_files(root)
        if not files:
            raise TemplateProblem(root, (0, 0), "", "is a directory holding no *.yaml file "
                                                    "(a directory is read as one topology)")
        for name in files:
            collector.add(name, ())
        return collector.sources
    collector = Collector(read, os.path.dirname(os.path.abspath(root)))
    collector.add(root, (), text, root=True)
    return collector.sources
