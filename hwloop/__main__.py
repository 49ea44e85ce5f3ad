from hwloop.cli import main

raise SystemExit(main())
