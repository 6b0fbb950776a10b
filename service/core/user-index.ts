/**
 * This instance's connections by user (the token's `sub`), for the server API: a user publish reaches every local
 * connection of the user, a disconnect closes them. Only connections with a `sub` are indexed; a connection's user
 * never changes (a token refresh keeps the `sub`), so the caller passes it again on removal instead of the index
 * keeping a second map per connection.
 */
export class UserIndex<C> {
  private readonly byUser = new Map<string, Set<C>>();

  add(conn: C, user: string | undefined): void {
    if (user === undefined) return;
    let set = this.byUser.get(user);
    if (set === undefined) {
      set = new Set();
      this.byUser.set(user, set);
    }
    set.add(conn);
  }

  remove(conn: C, user: string | undefined): void {
    if (user === undefined) return;
    const set = this.byUser.get(user);
    if (set === undefined) return;
    set.delete(conn);
    if (set.size === 0) this.byUser.delete(user);
  }

  /** The local connections of a user (empty when none). */
  of(user: string): readonly C[] {
    const set = this.byUser.get(user);
    return set === undefined ? [] : [...set];
  }
}
