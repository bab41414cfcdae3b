"""WeChat integration (placeholder until the integration module lands)."""


def init_app(app):  # noqa: ANN001, ANN201
    pass
