"""A deploy that brings a new model with an integrity rule: the rules cannot run before migrate."""
