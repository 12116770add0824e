"""CamVid-30K-style curation of raw videos into 4D training clips (paper §3): ``python -m genxd_jax.curate``.

One module per step: :mod:`frames` (decoding, sampling, resizing), :mod:`segment` (potentially moving objects),
:mod:`sfm` (pycolmap on the static part), :mod:`sparse_depth` (eq. 1), :mod:`depth` (the ``DepthModel``
protocol; :mod:`depth_anything` is the learned Depth Anything V2 source) and :mod:`align` (eq. 2),
:mod:`track` (keypoints per object), :mod:`motion_field` (eqs. 3–4 and the motion strength), :mod:`manifest`
(resumable stages) and :mod:`pipeline` (a clip, a batch); :mod:`synthetic` renders test clips.
"""
