"""A refused setting is named as it is set: flag and environment variable, never the field."""

from __future__ import annotations

import pytest
from kuberank.protocol.flags import setting_name, setting_problems
from pydantic import BaseModel, Field, ValidationError, model_validator


class _Settings(BaseModel):
    max_documents: int = Field(default=1, ge=1)
    read_timeout: float = 1.0

    @model_validator(mode="after")
    def _fits(self) -> _Settings:
        if self.read_timeout > 10:
            raise ValueError("too slow")
        return self


def test_each_refused_field_is_named_by_its_flag_and_variable() -> None:
    with pytest.raises(ValidationError) as refused:
        _Settings(max_documents=0, read_timeout="soon")  # type: ignore[arg-type]
    assert setting_problems(refused.value, "KUBERANK_X_") == (
        "--max-documents (KUBERANK_X_MAX_DOCUMENTS): Input should be greater than or equal to 1; "
        "--read-timeout (KUBERANK_X_READ_TIMEOUT): Input should be a valid number, unable to "
        "parse string as a number")


def test_a_check_across_settings_keeps_its_own_sentence() -> None:
    with pytest.raises(ValidationError) as refused:
        _Settings(read_timeout=11)
    assert setting_problems(refused.value, "KUBERANK_") == "settings: too slow"
    assert setting_name((), "KUBERANK_") == "settings"
