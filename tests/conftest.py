from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real speech beside the checkout (../shared/data); its absence is an error, not a skip."""
    if not SHARED_DATA.is_dir():
        raise RuntimeError(f"{SHARED_DATA}: shared test data not found beside the checkout")
    return SHARED_DATA
