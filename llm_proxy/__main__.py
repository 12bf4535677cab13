from llm_proxy.cli import main

raise SystemExit(main())
