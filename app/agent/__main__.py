"""`python -m app.agent`: run one agent (see app.agent.main)."""
from app.agent.main import main

main()
