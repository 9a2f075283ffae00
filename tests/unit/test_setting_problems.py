"""A refused setting is named as it is set: flag and environment variable, never the field."""

from __future__ import annotations

import pytest
from kuberank.protocol.flags import misspelt_variables, setting_name, setting_problems
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


def test_a_variable_close_to_a_setting_is_named_with_the_setting_it_misses() -> None:
    """Settings ignore unknown variables: a typo in a pod's env changed nothing, silently."""
    environ = {"KUBERANK_MAXDOCUMENTS": "5", "KUBERANK_MAX_DOCUMENTS": "6",
               "KUBERANK_READ_TIMOUT": "1", "KUBERANK_CACHE": "/c", "HOME": "/root"}
    assert misspelt_variables(environ, "KUBERANK_", _Settings.model_fields) == [
        "KUBERANK_MAXDOCUMENTS is not a setting and is ignored; did you mean "
        "KUBERANK_MAX_DOCUMENTS?",
        "KUBERANK_READ_TIMOUT is not a setting and is ignored; did you mean "
        "KUBERANK_READ_TIMEOUT?"]
    assert misspelt_variables({"KUBERANK_GATEWAY_PORT": "1"}, "KUBERANK_GATEWAY_", ["port"]) == []
