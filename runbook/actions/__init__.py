"""Actions: what a step can do.

:mod:`runbook.actions.spec` is the contract; one module or package per store declares its specs;
:mod:`runbook.actions.registry` lists them all. Importing this package imports nothing else.
"""
