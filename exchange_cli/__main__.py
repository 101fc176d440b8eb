from exchange_cli.commands import main

raise SystemExit(main())
