raise ImportError("torch is not installed on this device (tests/export/fake_device)")
