"""The type stub (ssock/__init__.pyi) describes the API that is there."""
import ast
import os
import unittest

import ssock

STUB = os.path.join(os.path.dirname(ssock.__file__), "__init__.pyi")


def stub_classes():
    with open(STUB) as f:
        tree = ast.parse(f.read())
    classes, names = {}, set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            members = set()
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    members.add(item.name)
                elif isinstance(item, ast.AnnAssign):
                    members.add(item.target.id)
            classes[node.name] = members
            names.add(node.name)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign):
            names.add(node.target.id)
    return classes, names


def public(obj):
    return {n for n in dir(obj) if not n.startswith("_")}


class StubTest(unittest.TestCase):
    def test_every_public_name_is_in_the_stub(self):
        classes, names = stub_classes()
        missing = {n for n in public(ssock) if n not in names
                   and not isinstance(getattr(ssock, n), type(ssock))}
        self.assertEqual(missing, set())
        self.assertEqual({n for n in ssock.__all__ if n not in names}, set())

    def test_the_stub_matches_the_classes(self):
        classes, _ = stub_classes()
        base = classes["_Handle"]
        for name in ("Server", "Client", "UDP", "Conn", "Event", "Loop"):
            with self.subTest(name):
                declared = classes[name] | (base if name in ("Server", "Client", "UDP") else set())
                declared = {n for n in declared if not n.startswith("_")}
                runtime = public(getattr(ssock, name))
                self.assertEqual(runtime - declared, set(), "undocumented")
                self.assertEqual(declared - runtime, set(), "documented but absent")


if __name__ == "__main__":
    unittest.main()
