import sys
from pathlib import Path

# tests/ helpers (data_files.py) are importable by the tests
sys.path.insert(0, str(Path(__file__).parent))
