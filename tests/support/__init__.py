"""Small factories the tests share: the fake exchange fixture, the pipeline runner, waiting on
conditions, free ports, trades. Scenarios live in the tests themselves."""
