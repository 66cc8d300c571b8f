raise ImportError("onnxconverter-common is not installed on this device (tests/export/fake_device)")
