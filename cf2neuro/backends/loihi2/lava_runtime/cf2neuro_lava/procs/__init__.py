"""cf2neuro's own Lava Processes, one subpackage each.

Lava imports every module beside a Process's module when it looks for its
ProcessModels, so each Process lives in a package of its own.
"""
