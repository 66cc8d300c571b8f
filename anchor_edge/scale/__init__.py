"""Beyond one process: batch jobs over image sets (Ray Data) and an HTTP server with request batching (Ray Serve).

Optional: `pip install 'anchor-edge[scale]'`. Nothing here is imported by
`anchor_edge` itself, and Ray is imported only inside these modules, so the
run time stays Ray-free unless this feature is used. Every actor and replica
opens the same bundle directory with `Pipeline.from_bundle` (checksums
checked, backend "auto"), so the bundle is the deployable unit.

    cluster   start a local cluster pinned to loopback, or join one
    results   the Parquet rows a batch job writes, and which inputs are done
    batch     the offline job: files -> actor pool -> Parquet (`anchor-edge batch`)
    serve     the online deployment: POST an image, get JSON (`anchor-edge serve`)

See docs/scale.md.
"""
