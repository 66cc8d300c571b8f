"""TensorRT backend: the runner, the machine's TensorRT and GPU, and the identity an engine was built for.

TensorRT and pycuda are imported only when an engine is opened, so this
package imports on a machine without them.
"""
