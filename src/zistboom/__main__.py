from zistboom.cli import main

raise SystemExit(main())
