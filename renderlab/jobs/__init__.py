"""What runs inside the render Jobs (build step, assemble, validate) and what the images share with the DAG
(the share layout, the atomic write). The only part of renderlab/ copied into the images: keep it free of
imports from the other packages."""
