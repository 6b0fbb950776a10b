/**
 * This instance's connections by id and by user (the token's `sub`), for the server API: a user publish reaches
 * every local connection of the user, a disconnect closes a user's connections or one connection by id.
 */

/** What the index needs of a connection. */
export interface Indexed {
  readonly id: string;
}

export class ConnectionIndex<C extends Indexed> {
  private readonly byId = new Map<string, C>();
  private readonly byUser = new Map<string, Set<C>>();
  private readonly userOf = new Map<C, string>();

  /** Adds a connection, under its user when it has one. */
  add(conn: C, user: string | undefined): void {
    this.byId.set(conn.id, conn);
    if (user === undefined) return;
    let set = this.byUser.get(user);
    if (set === undefined) {
      set = new Set();
      this.byUser.set(user, set);
    }
    set.add(conn);
    this.userOf.set(conn, user);
  }

  remove(conn: C): void {
    if (this.byId.get(conn.id) === conn) this.byId.delete(conn.id);
    const user = this.userOf.get(conn);
    if (user === undefined) return;
    this.userOf.delete(conn);
    const set = this.byUser.get(user);
    if (set === undefined) return;
    set.delete(conn);
    if (set.size === 0) this.byUser.delete(user);
  }

  /** The local connections of a user (empty when none). */
  ofUser(user: string): readonly C[] {
    const set = this.byUser.get(user);
    return set === undefined ? [] : [...set];
  }

  byConnectionId(id: string): C | undefined {
    return this.byId.get(id);
  }
}
