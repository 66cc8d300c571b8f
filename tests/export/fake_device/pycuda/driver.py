"""A fake pycuda.driver with one GPU whose name and compute capability come from the environment."""

import os


def init():
    pass


class Device:
    def __init__(self, ordinal):
        self.ordinal = ordinal

    @staticmethod
    def count():
        return 1

    def name(self):
        return os.environ.get("FAKE_GPU", "Orin")

    def compute_capability(self):
        return tuple(int(v) for v in os.environ.get("FAKE_CC", "8.7").split("."))
