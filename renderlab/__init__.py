"""renderlab: a self-hosted render lab and the render pipeline that runs on it."""
