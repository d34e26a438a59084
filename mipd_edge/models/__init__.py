"""Models (torch): the edge student, its backbones, and teacher adapters."""

from .student import STUDENT_CONFIGS, Student, StudentConfig, create_student, student_config

__all__ = ["STUDENT_CONFIGS", "Student", "StudentConfig", "create_student", "student_config"]
