"""Command-line flags of the IC Light extension (A1111 calls ``preload`` before parsing)."""


def preload(parser):
    """Add ``--ic-light-dir``: an extra folder of IC-Light ``.safetensors`` files.

    It is searched first, before ``<models>/ic-light`` and the extension's ``models`` folder,
    so a shared model drive can serve several WebUI installs.
    """
    parser.add_argument(
        "--ic-light-dir",
        type=str,
        default=None,
        help="IC Light: an extra folder with IC-Light models, searched before models/ic-light",
    )
