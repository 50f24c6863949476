from fastprune.cli import main

raise SystemExit(main())
