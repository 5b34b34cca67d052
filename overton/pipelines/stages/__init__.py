"""The stages of a build, in order; each is a module with a task function and reads its own settings.

1. :mod:`~overton.pipelines.stages.copies`: the raw documents that copy an earlier one, one task.
2. :mod:`~overton.pipelines.stages.documents`: per-document steps and signatures of the other documents, one
   task per raw row group.
3. :mod:`~overton.pipelines.stages.inherit`: the copies take what their originals got, one task per raw row group.
4. :func:`~overton.pipelines.stages.shards.link`: the version folder with the parent's files, one task.
5. :mod:`~overton.pipelines.stages.exact_dedup`: exact duplicates of text, then of id, one task per key range
   each, and the decisions, one task per document task.
6. Near-duplicate clusters (``[near_dedup]``, settings and replay in :mod:`~overton.pipelines.stages.near_dedup`):
   :mod:`~overton.pipelines.stages.near_bands`, sorted band keys, one task per document task and one for the
   published documents; :mod:`~overton.pipelines.stages.near_buckets`, candidate pairs, one task per band and
   key range; :mod:`~overton.pipelines.stages.near_clusters`, the clusters and the version's index, one task.
7. :mod:`~overton.pipelines.stages.shards`: the version's shards (``[shards]``) and counts, one task.

They communicate through files in the work folder (:mod:`~overton.pipelines.stages.work`); the executor
(:mod:`overton.pipelines.executor`) runs their tasks and owns the completion markers.
"""
