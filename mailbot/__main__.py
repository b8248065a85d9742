from mailbot.cli import main

if __name__ == "__main__":  # the reader processes (spawned) import this module too
    raise SystemExit(main())
