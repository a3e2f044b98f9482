"""One Gopher rule set: its defaults are datatrove's, and its thresholds are the filters' keyword arguments."""

import inspect

from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter

from factory.curate.gopher import GopherQuality, GopherRepetition


def test_defaults_are_datatrove_s():
    for rules, stock in ((GopherQuality(), GopherQualityFilter), (GopherRepetition(), GopherRepetitionFilter)):
        params = inspect.signature(stock.__init__).parameters
        assert rules.thresholds() == {name: params[name].default for name in rules.thresholds()}
