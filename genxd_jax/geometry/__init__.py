"""Cameras for GenXD sampling: OpenCV c2w poses, normalised intrinsics, Plücker rays and trajectories."""

from genxd_jax.geometry.cameras import (
    OPENGL_TO_OPENCV,
    CameraError,
    broadcast_intrinsics,
    intrinsics_matrix,
    look_at,
    normalise_intrinsics,
    opengl_to_opencv,
    orbit_camera,
    pixel_intrinsics,
    relative_poses,
    rigid_inverse,
    validate_c2w,
    validate_intrinsics,
)
from genxd_jax.geometry.rays import camera_ray_directions, pixel_centres, plucker_rays
from genxd_jax.geometry.rotations import matrix_to_quaternion, quaternion_to_matrix, slerp
from genxd_jax.geometry.spline import shift_scale, spline_trajectory
from genxd_jax.geometry.trajectories import (
    forward_trajectory,
    interpolate_poses,
    orbit_trajectory,
    order_by_proximity,
    smooth_trajectory,
    spiral_trajectory,
)

__all__ = [
    "OPENGL_TO_OPENCV",
    "CameraError",
    "broadcast_intrinsics",
    "camera_ray_directions",
    "forward_trajectory",
    "interpolate_poses",
    "intrinsics_matrix",
    "look_at",
    "matrix_to_quaternion",
    "normalise_intrinsics",
    "opengl_to_opencv",
    "orbit_camera",
    "orbit_trajectory",
    "order_by_proximity",
    "pixel_centres",
    "pixel_intrinsics",
    "plucker_rays",
    "quaternion_to_matrix",
    "relative_poses",
    "rigid_inverse",
    "shift_scale",
    "slerp",
    "smooth_trajectory",
    "spiral_trajectory",
    "spline_trajectory",
    "validate_c2w",
    "validate_intrinsics",
]
