from compress.cli import main

if __name__ == "__main__":  # spawned search workers import this module too
    main()
