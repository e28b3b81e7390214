"""What every part uses: errors for people, atomic files, JSON, the table renderer, clocks, memory, the machine."""
