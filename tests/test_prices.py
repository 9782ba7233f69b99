"""Prices (SPEC.md §1, budgets): a model mapping's `price` first, else litellm's bundled table; unknown is None.

The table is read as a data file from the litellm package, without importing litellm.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from loopkit.prices import TokenPrice, known_price, litellm_price, model_problem
from loopkit.spec import ModelRef, Price


def test_litellm_knows_gpt_4o_mini():
    # $0.15 / $0.60 per million tokens (DESIGN.md)
    assert litellm_price("gpt-4o-mini") == TokenPrice(0.15e-6, 0.60e-6)


def test_a_provider_prefix_is_tried_with_and_without_it():
    assert litellm_price("openai/gpt-4o-mini") == litellm_price("gpt-4o-mini")


def test_a_prefixed_entry_of_the_table_is_used_as_is():
    assert litellm_price("azure/gpt-4o-mini") is not None


def test_an_unknown_model_has_no_price_rather_than_a_zero_one():
    assert litellm_price("openai/my-local-model") is None
    assert known_price(ModelRef(id="openai/my-local-model")) is None


def test_a_mapping_price_in_dollars_per_million_tokens_overrides_the_table():
    model = ModelRef(id="gpt-4o-mini", price=Price(input_per_mtok=1.0, output_per_mtok=4.0))
    assert known_price(model) == TokenPrice(1e-6, 4e-6)


def test_a_mapping_price_makes_an_unknown_model_known():
    model = ModelRef(id="openai/my-local-model", price=Price(input_per_mtok=0, output_per_mtok=0.5))
    assert known_price(model) == TokenPrice(0.0, 0.5e-6)


def test_the_scripted_model_costs_nothing_unless_it_is_given_a_price():
    assert known_price(ModelRef(id="loopkit/scripted", replies=["x"])) == TokenPrice(0.0, 0.0)
    priced = ModelRef(id="loopkit/scripted", replies=["x"], price=Price(input_per_mtok=2, output_per_mtok=8))
    assert known_price(priced) == TokenPrice(2e-6, 8e-6)


def test_a_known_string_model_uses_the_table():
    assert known_price(ModelRef(id="gpt-4o-mini")) == TokenPrice(0.15e-6, 0.60e-6)


def test_cost_is_tokens_times_price():
    assert TokenPrice(0.15e-6, 0.60e-6).cost(1_000_000, 1_000_000) == pytest.approx(0.75)
    assert TokenPrice(0.0, 0.0).cost(10, 20) == 0.0


def test_reading_prices_does_not_import_litellm():
    code = ("import sys\nfrom loopkit.prices import litellm_price\n"
            "assert litellm_price('gpt-4o-mini') is not None\nassert 'litellm' not in sys.modules, 'imported litellm'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_bare_name_litellm_does_not_know_is_an_error_with_a_suggestion():
    problem = model_problem(ModelRef(id="gpt-4o-mimi"))
    assert problem is not None and problem.error and "did you mean `gpt-4o-mini`?" in problem.message


def test_an_unknown_provider_without_an_api_base_is_an_error():
    problem = model_problem(ModelRef(id="nosuchprovider/model"))
    assert problem is not None and problem.error and "`nosuchprovider` is not a provider" in problem.message


def test_a_known_provider_with_a_model_the_table_lacks_is_a_warning_unless_priced():
    problem = model_problem(ModelRef(id="openai/gpt-9-preview"))
    assert problem is not None and not problem.error
    assert model_problem(ModelRef(id="openai/gpt-9-preview", price=Price(input_per_mtok=1, output_per_mtok=2))) is None


def test_any_name_is_fine_behind_an_api_base_or_on_ollama_and_known_names_are_fine():
    for ref in (ModelRef(id="my-own-model", api_base="http://127.0.0.1:8000/v1"), ModelRef(id="ollama/my-finetune"),
                ModelRef(id="gpt-4o-mini"), ModelRef(id="openai/gpt-4o-mini"), ModelRef(id="loopkit/scripted", replies=["x"])):
        assert model_problem(ref) is None, ref.id
