"""Imported by verl itself, through ``VERL_USE_EXTERNAL_MODULES`` (which ``import mars`` sets): registers the ``mars``
estimator in verl's registry, so a source checkout without the package's ``verl.plugins`` entry point trains with it
too. The rest of MARS's verl plugin (``mars.verl_plugin``) comes through the entry point and Ray's runtime env."""

from mars.advantage.verl_estimator import register

register()
