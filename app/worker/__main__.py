"""`python -m app.worker`: run the central worker (see app.worker.main)."""
from app.worker.main import main

main()
