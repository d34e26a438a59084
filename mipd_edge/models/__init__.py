"""Models (torch): the edge student, its backbones, and teacher adapters."""

from .student import STUDENT_CONFIGS, HoiStudent, Student, StudentConfig, build_student, create_student, student_config

__all__ = [
    "STUDENT_CONFIGS",
    "HoiStudent",
    "Student",
    "build_student",
    "StudentConfig",
    "create_student",
    "student_config",
]
