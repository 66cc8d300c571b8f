"""A fake TensorRT builder: parses an ONNX file by reading its input name, and "builds" a JSON of the profiles
asked for.

Just the API export/engines/build.py calls; the version comes from FAKE_TENSORRT (default 10.3.0).
"""

import enum
import json
import os

__version__ = os.environ.get("FAKE_TENSORRT", "10.3.0")


class ILogger:
    class Severity(enum.Enum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    def __init__(self):
        pass


class Runtime:
    def __init__(self, logger):
        pass


class NetworkDefinitionCreationFlag(enum.IntEnum):
    STRONGLY_TYPED = 5


class BuilderFlag(enum.IntEnum):
    TF32 = 7


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0


class Dims(tuple):
    def __new__(cls, values):
        return super().__new__(cls, values)


class _Tensor:
    def __init__(self, name):
        self.name = name


class _Network:
    def __init__(self):
        self.inputs = []

    @property
    def num_inputs(self):
        return len(self.inputs)

    def get_input(self, index):
        return self.inputs[index]


class OnnxParser:
    def __init__(self, network, logger):
        self.network = network
        self.num_errors = 0

    def parse_from_file(self, path):
        import onnx

        model = onnx.load(path, load_external_data=False)
        self.network.inputs = [_Tensor(i.name) for i in model.graph.input]
        self.network.source = os.path.basename(path)
        return True


class _Profile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, low, opt, high):
        self.shapes[name] = [list(low), list(opt), list(high)]


class _TimingCache:
    def __init__(self, data):
        self.data = bytes(data)

    def serialize(self):
        return b"fake timing cache"


class _Config:
    def __init__(self):
        self.pools, self.profiles, self.cleared = {}, [], []

    def clear_flag(self, flag):
        self.cleared.append(int(flag))

    def set_memory_pool_limit(self, pool, size):
        self.pools[pool] = size

    def get_memory_pool_limit(self, pool):
        return self.pools[pool]

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, data):
        return _TimingCache(data)

    def set_timing_cache(self, cache, ignore_mismatch):
        return True


class Builder:
    def __init__(self, logger):
        pass

    def create_network(self, flags):
        return _Network()

    def create_builder_config(self):
        return _Config()

    def create_optimization_profile(self):
        return _Profile()

    def build_serialized_network(self, network, config):
        plan = {"source": network.source, "tensorrt": __version__, "profiles": [p.shapes for p in config.profiles]}
        return json.dumps(plan).encode()
