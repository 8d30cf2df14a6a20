"""Report sections: each module implements only ``register_report_sections`` and renders
``templates/sections/<module>.tex.j2``."""
